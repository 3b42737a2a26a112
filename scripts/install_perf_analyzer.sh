#!/usr/bin/env bash
# perf_analyzer 2.51 (the release of the CPU profile's tritonserver) into $VENV/bin, offline-capable,
# without root and without touching the project's own tritonclient:
#   - the binary from the tritonclient 2.51.0 wheel's data files (the wheel is unpacked, not installed);
#   - libb64.so.0d from Debian's libb64-0d (apt-get download + dpkg -x; no root needed);
#   - libcudart.so.12 from the PyPI wheel nvidia-cuda-runtime-cu12 (only loaded: no GPU is needed).
# $VENV/bin/perf_analyzer is a wrapper that puts those libraries on LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PA_VERSION=2.51.0
CUDART_VERSION=12.9.79
dest="$VENV/perf_analyzer"
installed_version() { "$VENV/bin/perf_analyzer" --version 2>&1 || true; }  # it prints to stderr
if [ -x "$VENV/bin/perf_analyzer" ] && [[ "$(installed_version)" == *"Version $PA_VERSION"* ]]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib"
"$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$work" \
  "tritonclient==$PA_VERSION" "nvidia-cuda-runtime-cu12==$CUDART_VERSION"
"$VENV/bin/python" - "$work" "$dest" <<'PY'
import sys, zipfile
from pathlib import Path
work, dest = Path(sys.argv[1]), Path(sys.argv[2])
for wheel in work.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            base = name.rsplit("/", 1)[-1]
            if name.endswith("/data/bin/perf_analyzer"):
                target = dest / "bin" / "perf_analyzer"
            elif base == "libcudart.so.12":
                target = dest / "lib" / base
            else:
                continue
            target.write_bytes(z.read(name))
            target.chmod(0o755)
missing = [p for p in (dest / "bin" / "perf_analyzer", dest / "lib" / "libcudart.so.12") if not p.is_file()]
if missing:
    sys.exit(f"install_perf_analyzer: not found in the wheels: {', '.join(map(str, missing))}")
PY
(cd "$work" && apt-get download libb64-0d >/dev/null 2>&1) || {
  echo "install_perf_analyzer: 'apt-get download libb64-0d' failed (Debian's package registry)" >&2
  exit 1
}
dpkg -x "$work"/libb64-0d_*.deb "$work/b64"
cp "$(find "$work/b64" -name 'libb64.so.0d*' | head -n 1)" "$dest/lib/libb64.so.0d"
cat > "$VENV/bin/perf_analyzer" <<'SH'
#!/usr/bin/env bash
here=$(cd "$(dirname "$0")/../perf_analyzer" && pwd)
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/perf_analyzer" "$@"
SH
chmod +x "$VENV/bin/perf_analyzer"
found=$(installed_version)
if [[ "$found" != *"Version $PA_VERSION"* ]]; then
  echo "install_perf_analyzer: $VENV/bin/perf_analyzer does not run: ${found:-no output}" >&2
  exit 1
fi
