# Starts a single-node Garage on loopback for the tests (sourced by
# scripts/test): builds Garage from crates.io into the tools cache once
# (about 15 minutes on 2 cores), then configures a bucket, a key and CORS
# exposing ETag, and exports FERRY_TEST_S3_*. `stop_garage` stops it.

start_garage() {
  local tools=$1 python=$2
  garage_bin="$tools/garage/bin/garage"
  if [ ! -x "$garage_bin" ]; then
    echo "scripts/test: building Garage into $tools/garage (once; about 15 minutes)" >&2
    cargo install garage --version 2.5.0 --locked --root "$tools/garage" >&2 || {
      echo "scripts/test: building Garage failed" >&2; return 1; }
  fi
  garage_dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-garage.XXXXXX")
  local rpc s3 admin
  rpc=$(free_port); s3=$(free_port); admin=$(free_port)
  cat > "$garage_dir/garage.toml" <<TOML
metadata_dir = "$garage_dir/meta"
data_dir = "$garage_dir/data"
db_engine = "sqlite"
metadata_fsync = true
data_fsync = true
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
TOML
  local g="$garage_bin -c $garage_dir/garage.toml"
  $g server > "$garage_dir/log" 2>&1 &
  garage_pid=$!
  local node="" tries=0
  until node=$($g status 2>/dev/null | awk -v a="127.0.0.1:$rpc" '$0 ~ a { print $1; exit }') && [ -n "$node" ]; do
    tries=$((tries + 1))
    if [ $tries -gt 100 ] || ! kill -0 "$garage_pid" 2>/dev/null; then
      echo "scripts/test: Garage did not start:" >&2; cat "$garage_dir/log" >&2; return 1
    fi
    sleep 0.1
  done
  $g layout assign -z dc1 -c 10G "$node" > /dev/null
  $g layout apply --version 1 > /dev/null
  local key_out
  key_out=$($g key create ferry-test)
  $g bucket create ferry > /dev/null
  $g bucket allow --read --write --owner ferry --key ferry-test > /dev/null
  export FERRY_TEST_S3_ENDPOINT="http://127.0.0.1:$s3"
  export FERRY_TEST_S3_REGION=garage
  export FERRY_TEST_S3_BUCKET=ferry
  FERRY_TEST_S3_ACCESS_KEY_ID=$(echo "$key_out" | awk '/Key ID/ { print $NF }')
  FERRY_TEST_S3_SECRET_ACCESS_KEY=$(echo "$key_out" | awk '/Secret key/ { print $NF }')
  export FERRY_TEST_S3_ACCESS_KEY_ID FERRY_TEST_S3_SECRET_ACCESS_KEY
  # Browsers PUT parts straight to the bucket and must read the ETag.
  "$python" - <<'PY'
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["FERRY_TEST_S3_ENDPOINT"], region_name="garage",
                  aws_access_key_id=os.environ["FERRY_TEST_S3_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["FERRY_TEST_S3_SECRET_ACCESS_KEY"])
s3.put_bucket_cors(Bucket="ferry", CORSConfiguration={"CORSRules": [{
    "AllowedOrigins": ["*"], "AllowedMethods": ["PUT", "GET", "HEAD"],
    "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3600}]})
PY
  echo "scripts/test: Garage S3 API on $FERRY_TEST_S3_ENDPOINT" >&2
}

stop_garage() {
  [ -n "${garage_pid:-}" ] && kill "$garage_pid" 2>/dev/null && wait "$garage_pid" 2>/dev/null
  [ -n "${garage_dir:-}" ] && rm -rf "$garage_dir"
  garage_pid= garage_dir=
}
