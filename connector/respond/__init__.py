"""Layer 3: the SOAR half (callback receiver, playbooks, actions, queue, audit). Where it must rescan or publish,
it goes through the protocols of connector.core, which the runtime injects; it never imports scan or delivery."""
