#!/usr/bin/env bash
# Sheaf's test command: installs what the tests need, then runs every test of the workspace.
#  - a Python virtualenv in .venv from the pinned tests/requirements.txt (moto, cfn-lint, SAM CLI,
#    pycsw)
#  - nginx, unzip and a JDK (two of the three readers every test zip must pass), util-linux's
#    unshare and iproute2's ip, Chromium and its WebDriver (the admin page's test), docker.io,
#    busybox-static and binutils (the Lambda runtime's test), through apt-get when missing and
#    running as root
#  - a docker daemon of its own (data in /tmp/sheaf-docker, stopped at the end) unless one
#    answers already, for `sam local invoke`
# With SHEAF_EXTRA_FIXTURES=DIR it also harvests the real third-party records in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$(date +%s)
say() { printf '== %s\n' "$*" >&2; }

# --- Python tools, pinned --------------------------------------------------------------------
stamp=.venv/.requirements.sha256
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/moto_server ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing tests/requirements.txt into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --disable-pip-version-check -q -r tests/requirements.txt
  echo "$want" > "$stamp"
fi

# --- System programs -------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
command -v gzip >/dev/null 2>&1 || missing+=(gzip)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ -x /usr/sbin/dockerd ] || command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing+=(busybox-static)
command -v objdump >/dev/null 2>&1 || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: missing ${missing[*]}; install them (sudo apt-get install ${missing[*]}) or run as root" >&2
    exit 1
  fi
fi
export SHEAF_NGINX=${SHEAF_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
export SHEAF_MOTO_SERVER=$root/.venv/bin/moto_server
export PATH=$PATH:/usr/sbin:/sbin

# --- A docker daemon, for sam local invoke (common/tests/lambda_runtime.rs) -------------------
if ! docker version >/dev/null 2>&1; then
  docker_dir=/tmp/sheaf-docker
  export DOCKER_HOST=unix://$docker_dir/docker.sock
  if ! docker version >/dev/null 2>&1; then
    say "starting dockerd (data in $docker_dir)"
    mkdir -p "$docker_dir"
    dockerd --data-root "$docker_dir/root" --exec-root "$docker_dir/exec" -p "$docker_dir/pid" \
      -H "$DOCKER_HOST" --storage-driver vfs > "$docker_dir/log" 2>&1 &
    dockerd_pid=$!
    trap 'kill $dockerd_pid 2>/dev/null || true' EXIT
    for _ in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
    docker version >/dev/null || { tail -20 "$docker_dir/log" >&2; exit 1; }
  fi
fi

# --- The SAM template ------------------------------------------------------------------------
say "linting template.yaml"
.venv/bin/cfn-lint template.yaml
SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  .venv/bin/sam validate --lint -t template.yaml --region us-east-1 >/dev/null

# --- Every test of the workspace -------------------------------------------------------------
# No AWS settings of the caller's may leak into tests that start their own moto.
unset AWS_PROFILE AWS_ENDPOINT_URL SHEAF_BUCKET SHEAF_DATA_DIR SHEAF_API_TOKEN
if cargo nextest --version >/dev/null 2>&1; then
  say "cargo nextest run --workspace"
  cargo nextest run --workspace --no-fail-fast
else
  say "cargo test --workspace"
  cargo test --workspace --no-fail-fast
fi

if [ -n "${SHEAF_EXTRA_FIXTURES:-}" ]; then
  say "harvesting the real records in $SHEAF_EXTRA_FIXTURES"
  SHEAF_EXTRA_FIXTURES=$(cd "$SHEAF_EXTRA_FIXTURES" && pwd) cargo test -p sheaf-common --test extra_fixtures
fi
say "tests/run.sh passed in $(( $(date +%s) - started )) s"
