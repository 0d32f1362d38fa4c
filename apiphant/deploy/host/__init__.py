"""What the deploy runs on a host, by noun: each module builds the shell commands of one
thing (the lock, the releases, Supervisor, Nginx...) and reads back what they answer.

Builders are pure: each returns one POSIX shell command, run as root (directly, or
through sudo for a non-root SSH user: ``ssh.Remote`` wraps it). Paths come from ``layout``
alone, names from a checked Config, and all are quoted with shlex.quote all the same.
Loops are bounded: a check gives up. They never import render, plan, ssh or orchestrate.
"""
