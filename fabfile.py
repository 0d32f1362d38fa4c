"""The deploy kit's tasks for the products in this checkout: ``fab deploy --product=myproduct``.

A product's own repository has the same two lines (``apiphant new`` writes
them); there the product needs no ``--product``. ``fab --list`` shows the
tasks, ``fab --help TASK`` their flags; docs/deploy.md says the rest.
"""

from apiphant.deploy.fabtasks import *  # noqa: F403
