"""A test product whose handlers use every option of field(): the OpenAPI document's
fixture (tests/test_openapi.py), checked by schemathesis and a browser."""
