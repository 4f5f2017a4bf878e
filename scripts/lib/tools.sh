# Installers for the tools the test scripts use, cached under $1 (the
# tools dir) so later runs reuse them.

# A venv with the Python tools from PyPI: openapi-spec-validator checks the
# OpenAPI document, schemathesis generates requests from it, boto3 sets the
# test bucket's CORS rules, prometheus-client's parsers read /metrics as a
# Prometheus would, standardwebhooks verifies webhook deliveries as a
# receiver would. Sets $venv.
install_python_tools() {
  venv="$1/openapi-venv"
  if [ -x "$venv/bin/openapi-spec-validator" ] && [ -x "$venv/bin/st" ] \
    && "$venv/bin/python" -c "import boto3, prometheus_client, standardwebhooks" 2>/dev/null; then
    return
  fi
  echo "scripts: installing openapi-spec-validator, schemathesis, boto3 and prometheus-client into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "openapi-spec-validator==0.9.0" "schemathesis==4.32.*" "boto3==1.*" \
    "prometheus-client==0.26.0" "standardwebhooks==1.3.0"
}

# install_pinned_venv TOOLS NAME VERSION MODULE: NAME==VERSION from PyPI in
# a venv of its own under TOOLS (its pins are nobody else's), unless
# MODULE already imports there. Sets $pinned_python.
install_pinned_venv() {
  local venv="$1/$2-$3-venv"
  pinned_python="$venv/bin/python"
  "$pinned_python" -c "import $4" 2>/dev/null && return
  echo "scripts: installing $2==$3 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$2==$3"
}

# The official Archetype Python client of today, for the API suite's
# clients.rs. Sets $archetypeai_python.
archetypeai_version=26.10.14.0
install_archetypeai_client() {
  install_pinned_venv "$1" archetypeai "$archetypeai_version" archetypeai
  archetypeai_python=$pinned_python
}

# selenium, which drives Debian's Chromium (through Debian's chromedriver,
# so nothing downloads a browser) for the page's tests in browser.rs.
# Sets $selenium_python.
selenium_version=4.51.0
install_selenium() {
  install_pinned_venv "$1" selenium "$selenium_version" selenium
  selenium_python=$pinned_python
}

# cargo-fuzz and the nightly toolchain it builds with (pinned, so a new
# nightly cannot break the build). Puts cargo-fuzz on PATH; sets $fuzz_toolchain.
fuzz_toolchain=nightly-2026-05-19
install_fuzz_tools() {
  if ! rustup run "$fuzz_toolchain" rustc -V >/dev/null 2>&1; then
    echo "scripts: installing Rust $fuzz_toolchain for cargo-fuzz" >&2
    rustup toolchain install "$fuzz_toolchain" --profile minimal
  fi
  if [ ! -x "$1/cargo-fuzz/bin/cargo-fuzz" ]; then
    echo "scripts: installing cargo-fuzz into $1/cargo-fuzz" >&2
    cargo install --quiet --locked cargo-fuzz@0.13.2 --root "$1/cargo-fuzz"
  fi
  export PATH="$1/cargo-fuzz/bin:$PATH"
}

# What the benchmarks drive and measure with, from Debian: wrk, the HTTP
# load generator, and GNU time for peak RSS.
install_bench_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v pgrep >/dev/null || missing+=(procps)
  command -v fio >/dev/null || missing+=(fio)
  [ -x /usr/bin/time ] || missing+=(time)
  command -v nginx >/dev/null || missing+=(nginx)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  [ ${#missing[@]} -eq 0 ] && return
  echo "scripts: installing ${missing[*]} from Debian" >&2
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
}

# The tus reference server (@tus/server 2, @tus/file-store) and client
# (tus-js-client) from npm, pinned, for bench/run's ingest peer; in the
# tools cache, with bench/tus's two scripts copied beside them (Node
# resolves their imports from there). Sets tus_dir.
install_tus() {
  local tools=$1
  tus_dir=$tools/tus-server-2.4.5
  if [ ! -d "$tus_dir/node_modules/tus-js-client" ]; then
    command -v npm >/dev/null || { echo "scripts: the tus peer needs Node.js 20 and npm" >&2; return 1; }
    echo "scripts: installing the tus server and client from npm into $tus_dir" >&2
    mkdir -p "$tus_dir"
    (cd "$tus_dir" && npm install --no-audit --no-fund --silent \
      @tus/server@2.4.5 @tus/file-store@2.1.1 tus-js-client@4.3.1 >/dev/null)
  fi
  cp bench/tus/*.mjs "$tus_dir/"
}
