"""The release's virtualenv: shared by releases of the same packages, built once per
platform and copied to the platform's other hosts."""

from shlex import quote as q

from apiphant.deploy.host.shell import join
from apiphant.deploy.layout import VENV_DONE, Paths


def virtualenv(paths: Paths, python: str, product: str, key: str, wheels: bool = True) -> str:
    """The release's virtualenv: the one an earlier release made for the same packages
    (``key``: a digest of the wheels and requirements), or a new one installed from the
    release's wheels; the release links to it. A build that died is started again. Without
    ``wheels`` (the host said it had the virtualenv, so none were sent) it must be there."""
    shared = paths.layout.venv(key)
    done = paths.layout.venv_done(key)
    gone = q(f"virtualenv {shared} is no longer on this host (the deploy sent no wheels, as "
             "the host had it when asked): deploy again")  # fmt: skip
    # Without ensurepip, which copies pip and setuptools in from the host's own wheels (about
    # 2.5 s of CPU a build, and 10 MB more to pack for other hosts): pip runs from its wheel
    # in the release (the python role asks for it) and installs itself with the rest.
    no_pip = q(f"no pip wheel in {paths.wheels}: the deploy puts one there")
    build = (
        f"rm -rf {q(shared)} && {q(python)} -m venv --without-pip {q(shared)} && "
        f"set -- {q(paths.wheels)}/pip-*.whl && "
        f"{{ [ -e \"$1\" ] || {{ echo {no_pip} >&2; false; }}; }} && "
        f"{q(shared + '/bin/python')} \"$1/pip\" install --quiet --disable-pip-version-check "
        f"-r {q(paths.requirements)} && touch {q(done)}"
        if wheels else f"echo {gone} >&2; false"
    )  # fmt: skip
    return _venv(paths, product, key, build)


def _venv(paths: Paths, product: str, key: str, make: str) -> str:
    """The shared virtualenv ``key`` if it is complete, else ``make`` it; the release links
    to it and its product code is compiled with it."""
    shared = paths.layout.venv(key)
    return join(
        f"install -d -m 0755 {q(paths.layout.venvs)}",
        f"if [ -e {q(paths.layout.venv_done(key))} ]; then echo 'virtualenv: same packages as an "
        f"earlier release, reused {shared}'; else {make}; fi",
        f"ln -sfn {q(shared)} {q(paths.venv)}",
        f"{q(paths.venv + '/bin/python')} -m compileall -q {q(paths.product(product))}",
    )


def pack_venv(paths: Paths, key: str) -> str:
    """The virtualenv just built, as one archive for the hosts of the same platform
    (``virtualenv_from_archive``): its paths are the same there (one layout), so it runs as
    built. Without ``.complete``, which only the receiving host writes, after it unpacked
    the whole. Readable by all, so a login user that is not root can download it: a
    virtualenv holds packages only, no secret."""
    archive = q(paths.venv_archive)
    return join(
        # tar runs zstd itself: a file it cannot read fails the step (a pipe's status is
        # zstd's), and no virtualenv with a hole is sent on.
        f"tar -C {q(paths.layout.venvs)} --exclude={q(key + '/' + VENV_DONE)} "
        f"--zstd -cf {archive} {q(key)}",
        f"chmod 0644 {archive}",
        f"echo \"virtualenv packed for the hosts of this platform: $(du -k {archive} | "
        "cut -f1) KiB\"",
    )


def virtualenv_from_archive(paths: Paths, product: str, key: str) -> str:
    """The release's virtualenv unpacked from the archive of the host of this platform that
    built it (``pack_venv``), instead of built again here: the same packages, byte for byte,
    for a fraction of a build's CPU. Marked complete only once all of it is unpacked; the
    archive goes either way."""
    shared = paths.layout.venv(key)
    archive = q(paths.venv_archive)
    unpack = (
        f"rm -rf {q(shared)} && tar --zstd -xf {archive} -C {q(paths.layout.venvs)} "
        f"--no-same-owner && touch {q(paths.layout.venv_done(key))} && echo 'virtualenv: "
        f"unpacked {shared} as built on another host of this platform'"
    )
    return f"{_venv(paths, product, key, unpack)}; status=$?; rm -f {archive}; exit $status"
