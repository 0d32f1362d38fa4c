"""A product with a database, for the deploy kit's PostgreSQL tests (test_deploy_postgres*):
notes created and read through apiphant.db, its schema in migrations/."""
