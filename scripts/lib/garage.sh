# Garage on loopback for the tests (sourced by scripts/test and by tests
# that need a cluster of their own).
#   install_garage TOOLS     builds Garage from crates.io into the tools
#                            cache once (about 15 minutes on 2 cores); sets
#                            $garage_bin
#   start_garage [NODES]     starts NODES nodes (default 1) replicating
#                            every object NODES times, with a bucket and a
#                            key; exports FERRY_TEST_S3_*; sets $garage_dir
#                            and $garage_pids (node 1 first: the S3 endpoint)
#   allow_browsers PYTHON    CORS rules exposing ETag on the bucket (boto3)
#   stop_garage              stops the nodes and removes their files

install_garage() {
  garage_bin="$1/garage/bin/garage"
  [ -x "$garage_bin" ] && return
  echo "scripts: building Garage into $1/garage (once; about 15 minutes)" >&2
  cargo install garage --version 2.5.0 --locked --root "$1/garage" >&2 || {
    echo "scripts: building Garage failed" >&2; return 1; }
}

start_garage() {
  local nodes=${1:-1} secret i rpc s3 admin id g
  garage_dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-garage.XXXXXX")
  garage_pids=()
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  local ids=() rpcs=()
  for i in $(seq 1 "$nodes"); do
    rpc=$(free_port); s3=$(free_port); admin=$(free_port)
    mkdir -p "$garage_dir/$i"
    cat > "$garage_dir/$i/garage.toml" <<TOML
metadata_dir = "$garage_dir/$i/meta"
data_dir = "$garage_dir/$i/data"
db_engine = "sqlite"
metadata_fsync = true
data_fsync = true
replication_factor = $nodes
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
TOML
    "$garage_bin" -c "$garage_dir/$i/garage.toml" server > "$garage_dir/$i/log" 2>&1 &
    garage_pids+=($!)
    [ "$i" = 1 ] && export FERRY_TEST_S3_ENDPOINT="http://127.0.0.1:$s3"
    rpcs+=("127.0.0.1:$rpc")
  done
  for i in $(seq 1 "$nodes"); do
    g="$garage_bin -c $garage_dir/$i/garage.toml"
    local tries=0
    # `node id` can answer from the key file before the node listens;
    # `status` needs its RPC port.
    until $g status > /dev/null 2>&1 && id=$($g node id -q 2>/dev/null) && [ -n "$id" ]; do
      tries=$((tries + 1))
      if [ $tries -gt 100 ] || ! kill -0 "${garage_pids[$((i - 1))]}" 2>/dev/null; then
        echo "scripts: Garage node $i did not start:" >&2; cat "$garage_dir/$i/log" >&2; return 1
      fi
      sleep 0.1
    done
    ids+=("${id%@*}")
  done
  g="$garage_bin -c $garage_dir/1/garage.toml"
  for i in $(seq 2 "$nodes"); do
    $g node connect "${ids[$((i - 1))]}@${rpcs[$((i - 1))]}" > /dev/null
  done
  for id in "${ids[@]}"; do
    $g layout assign -z dc1 -c 10G "$id" > /dev/null
  done
  $g layout apply --version 1 > /dev/null
  # Writes need a quorum of nodes that know the layout.
  for i in $(seq 2 "$nodes"); do
    local tries=0
    until "$garage_bin" -c "$garage_dir/$i/garage.toml" layout show 2>/dev/null | grep -q "layout version: 1"; do
      tries=$((tries + 1))
      [ $tries -gt 100 ] && { echo "scripts: Garage node $i never got the layout" >&2; return 1; }
      sleep 0.1
    done
  done
  local key_out
  key_out=$($g key create ferry-test)
  $g bucket create ferry > /dev/null
  $g bucket allow --read --write --owner ferry --key ferry-test > /dev/null
  export FERRY_TEST_S3_REGION=garage
  export FERRY_TEST_S3_BUCKET=ferry
  FERRY_TEST_S3_ACCESS_KEY_ID=$(echo "$key_out" | awk '/Key ID/ { print $NF }')
  FERRY_TEST_S3_SECRET_ACCESS_KEY=$(echo "$key_out" | awk '/Secret key/ { print $NF }')
  export FERRY_TEST_S3_ACCESS_KEY_ID FERRY_TEST_S3_SECRET_ACCESS_KEY
  echo "scripts: Garage ($nodes node(s)), S3 API on $FERRY_TEST_S3_ENDPOINT" >&2
}

# Browsers PUT parts straight to the bucket and must read the ETag.
allow_browsers() {
  "$1" - <<'PY'
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["FERRY_TEST_S3_ENDPOINT"], region_name="garage",
                  aws_access_key_id=os.environ["FERRY_TEST_S3_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["FERRY_TEST_S3_SECRET_ACCESS_KEY"])
s3.put_bucket_cors(Bucket="ferry", CORSConfiguration={"CORSRules": [{
    "AllowedOrigins": ["*"], "AllowedMethods": ["PUT", "GET", "HEAD"],
    "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3600}]})
PY
}

stop_garage() {
  local pid
  for pid in ${garage_pids[@]+"${garage_pids[@]}"}; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  [ -n "${garage_dir:-}" ] && rm -rf "$garage_dir"
  garage_pids=() garage_dir=
}
