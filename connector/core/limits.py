"""How many sockets this process may hold, from its descriptor limit (RLIMIT_NOFILE).

A probe that runs out of descriptors gets EMFILE, which looks like a failed connect: left unbounded, a large scan
would report open ports as closed. The probes therefore share one budget below the limit, and the limit itself is
raised to the hard one where the system allows, as servers do at start.
"""

from __future__ import annotations

import errno
import resource

# errors that describe this host running out of something, never the target refusing
OWN_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# descriptors kept out of the probes' budget: the interpreter, the event loop, spool, state and log files, and the
# HTTP clients' pools (two clients of at most 64 connections each)
_RESERVE = 192


def raise_open_files_limit() -> int:
    """Raise the soft descriptor limit to the hard one (allowed without privilege); return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard not in (resource.RLIM_INFINITY, soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft


def socket_budget() -> int:
    """Sockets the probes may hold at once: the soft descriptor limit less a reserve, half of it for small limits."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - min(_RESERVE, soft // 2))


def is_own_resource_error(exc: OSError) -> bool:
    """True when the error is ours (out of descriptors, buffers, memory), not an answer from the target."""
    return exc.errno in OWN_RESOURCE_ERRNOS
