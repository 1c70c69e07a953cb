"""The HTTP Observatory grade: a pure grader (the published scoring tables) and the check that feeds it pages."""

from connector.scan.checks.observatory.check import CHECK

__all__ = ["CHECK"]
