"""``[logs]``: how every host rotates the deployment's logs."""

from apiphant.deploy.config.model import Logs
from apiphant.deploy.config.reader import Reader, size


def read_logs(lg: Reader) -> Logs:
    """How every host rotates the deployment's logs."""
    return Logs(size(lg, "max_size", Logs.max_size), lg.seconds("check_every", Logs.check_every))
