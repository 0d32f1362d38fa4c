"""The deploy kit's data (roles/, templates/), shipped as apiphant.deploy_kit: see
apiphant/deploy/kit.py."""
