"""myproduct's deploy: `fab deploy`, `fab rollback`, `fab status`... (`fab --list`; README.md)."""

from apiphant.deploy.fabtasks import *  # noqa: F403
