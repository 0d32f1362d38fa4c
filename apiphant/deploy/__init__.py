"""The deploy kit: ``fab deploy --product=myproduct HOST`` to Supervisor and Nginx.

Layers, each usable alone:

- ``config``: PRODUCT/deploy.toml into frozen dataclasses, one-line errors.
- ``roles``: what each role needs (deploy/roles/*.toml).
- ``render``: config into files, Jinja2 with StrictUndefined; pure.
- ``commands`` and ``plan``: the deploy as a list of printable steps; pure.
- ``artifacts``: the local build (a wheel of apiphant, the release tarball).
- ``orchestrate``: runs a plan's phases under the lock, rolls back on failure;
  ``ssh`` runs the steps over Fabric connections, ``console`` prints them
  (``DryRun``: --dry-run).
- ``tasks``: what the fabfile's tasks call.

Every path on a host is ``layout``'s. The roles and templates are package
data (``kit``): an installed apiphant deploys without a checkout.
"""

