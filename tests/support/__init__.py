"""What the tests and bench/ share: free ports, stopping a process, a load that counts what
fails. One home each, so a fix to one reaches every test that starts servers or loads them."""
