"""sigstore is an optional extra: the agent and attestctl work without it.

Each test runs a fresh interpreter in which a meta-path finder makes ``sigstore``
(and every submodule) look uninstalled, whether or not this environment has it.
Only ``attestctl attestation sign-keyless`` needs it, and it says which extra to
install instead of printing a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.verifier.chain_builder import BASE, DATASET, attest, make_tdx_agent

NO_SIGSTORE = textwrap.dedent(
    """
    import sys

    class NoSigstore:
        '''Answers every import of sigstore as a package that is not installed.'''

        def find_spec(self, name, path=None, target=None):
            if name == "sigstore" or name.startswith("sigstore."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoSigstore())
    for name in [m for m in sys.modules if m == "sigstore" or m.startswith("sigstore.")]:
        del sys.modules[name]

    def sigstore_loaded():
        return sorted(m for m in sys.modules if m == "sigstore" or m.startswith("sigstore."))
    """
)


def run_without_sigstore(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_SIGSTORE + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def stage_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = attest(
        make_tdx_agent(tmp_path_factory.mktemp("tdx")), "train", (DATASET,), (BASE,), None
    )
    path = tmp_path_factory.mktemp("stage") / "train.attestation.json"
    path.write_bytes(built.attestation)
    return path


def test_the_blocker_really_hides_sigstore() -> None:
    done = run_without_sigstore(
        """
        try:
            import sigstore.oidc
        except ModuleNotFoundError as err:
            print("blocked", err.name)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "blocked sigstore"  # the package itself is absent


def test_every_module_of_the_agent_and_attestctl_imports_without_sigstore() -> None:
    done = run_without_sigstore(
        """
        import importlib, pkgutil
        import attestd

        names = [
            "attestd.cli",
            "attestd.client",
            "attestd.integrations.sigstore",
            "attestd.agent.main",
        ]
        for package in ("agent", "tee", "evidence", "verifier"):
            module = importlib.import_module(f"attestd.{package}")
            names += [m.name for m in pkgutil.walk_packages(module.__path__, module.__name__ + ".")]
        imported = 0
        for name in names:
            try:
                importlib.import_module(name)
                imported += 1
            except ImportError as err:
                # Other optional extras (cupy for the GPU path) may be absent too;
                # only sigstore is the question here.
                if (err.name or "").split(".")[0] == "sigstore":
                    raise
        print(imported, sigstore_loaded())
        """
    )
    assert done.returncode == 0, done.stderr
    imported, loaded = done.stdout.split(" ", 1)
    assert int(imported) > 20
    assert loaded.strip() == "[]"


def test_attestctl_runs_and_exports_bundles_without_sigstore(
    stage_file: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "train.sigstore.json"
    done = run_without_sigstore(
        f"""
        from attestd.cli import build_parser, main

        build_parser().format_help()
        code = main(["attestation", "export-bundle", {str(stage_file)!r}, "-o", {str(bundle)!r}])
        print("exit", code, sigstore_loaded())
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "exit 0 []"
    assert json.loads(bundle.read_bytes())["verificationMaterial"]["tlogEntries"] == []


def test_sign_keyless_without_sigstore_names_the_extra_instead_of_a_traceback(
    stage_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "keyless.json"
    done = run_without_sigstore(
        f"""
        from attestd.cli import main

        code = main(["attestation", "sign-keyless", {str(stage_file)!r}, "-o", {str(out)!r},
                     "--identity-token", "not-needed-before-the-extra"])
        print("exit", code)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exit 2"
    assert "Traceback" not in done.stderr
    assert "sigstore_not_installed" in done.stderr
    assert "pip install 'attestd[sigstore]'" in done.stderr
    assert not out.exists()


def test_the_library_raises_a_typed_error_naming_the_extra() -> None:
    done = run_without_sigstore(
        """
        from attestd.integrations.sigstore import SigstoreNotInstalledError, detect_ambient_token

        try:
            detect_ambient_token()
        except SigstoreNotInstalledError as err:
            print(err.reason, "|", err.message)
        """
    )
    assert done.returncode == 0, done.stderr
    reason, message = done.stdout.strip().split(" | ")
    assert reason == "sigstore_not_installed"
    assert "pip install 'attestd[sigstore]'" in message
