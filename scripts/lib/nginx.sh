# nginx running deploy/nginx.conf in front of a ferry, with a certificate
# of a CA made here, on a free port of loopback: for bench/run (the API
# suite's packaging.rs does the same in Rust). Needs nginx and openssl.

# nginx_conf DIR HTTP: writes DIR/nginx.conf, an nginx that keeps all it
# writes in DIR and runs HTTP (directives for its `http {}` block).
nginx_conf() {
  local dir=$1 http=$2
  # Workers as the user running this (root's would otherwise be `nobody`,
  # who cannot read a private temp dir).
  cat > "$dir/nginx.conf" <<CONF
daemon off;
user $(id -un) $(id -gn);
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  $http
}
CONF
}

# start_nginx UPSTREAM DIR: runs nginx in DIR before ferry at UPSTREAM
# (host:port); sets nginx_url (https://127.0.0.1:PORT), nginx_ca (the CA
# file a client must trust) and nginx_pid.
start_nginx() {
  local upstream=$1 dir=$2 port
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=ferry bench CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout "$dir/key.pem" -out "$dir/cert.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$dir/ext.cnf"
  openssl x509 -req -in "$dir/cert.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/ext.cnf" -out "$dir/cert.pem" 2>/dev/null
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  sed -e "s|server 127.0.0.1:8080;|server $upstream;|" -e "s|listen 443 ssl http2;|listen 127.0.0.1:$port ssl http2;|" \
    -e "/listen \[::\]:443/d" -e "s|/etc/ssl/ferry/cert.pem|$dir/cert.pem|" -e "s|/etc/ssl/ferry/key.pem|$dir/key.pem|" \
    deploy/nginx.conf > "$dir/site.conf"
  nginx_conf "$dir" "include $dir/site.conf;"
  nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" &
  nginx_pid=$!
  local tries=0
  until curl -sf --cacert "$dir/ca.pem" -o /dev/null "https://127.0.0.1:$port/health"; do
    tries=$((tries + 1))
    [ $tries -gt 100 ] && { echo "nginx did not start:" >&2; cat "$dir/error.log" >&2; return 1; }
    sleep 0.1
  done
  nginx_url=https://127.0.0.1:$port nginx_ca=$dir/ca.pem
}

# launch_plain_nginx DIR PORT: runs the nginx of DIR/nginx.conf and waits
# until it answers plain HTTP on PORT; sets launched_pid.
launch_plain_nginx() {
  local dir=$1 port=$2
  nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" &
  launched_pid=$!
  local tries=0
  until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
    tries=$((tries + 1))
    [ $tries -gt 100 ] && { echo "nginx did not start:" >&2; cat "$dir/error.log" >&2; return 1; }
    sleep 0.1
  done
}

# start_static_nginx ROOT DIR: nginx serving the files under ROOT over
# plain HTTP with sendfile, the download peer of bench/run; sets
# static_url and static_pid.
start_static_nginx() {
  local root=$1 dir=$2 port
  mkdir -p "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  nginx_conf "$dir" "sendfile on; tcp_nopush on; server { listen 127.0.0.1:$port; root $root; }"
  launch_plain_nginx "$dir" "$port"
  static_pid=$launched_pid
  static_url=http://127.0.0.1:$port
}

# start_put_nginx DIR: nginx storing each PUT body as a file under DIR/files
# (the WebDAV module; 512 KiB body buffer; no sync, no checksum), the
# CPU peer of bench/run's ingest; sets put_url and put_pid.
start_put_nginx() {
  local dir=$1 port
  mkdir -p "$dir/files" "$dir/body"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  nginx_conf "$dir" "server { listen 127.0.0.1:$port; root $dir/files; client_max_body_size 0;
    client_body_buffer_size 512k; location / { dav_methods PUT; } }"
  launch_plain_nginx "$dir" "$port"
  put_pid=$launched_pid
  put_url=http://127.0.0.1:$port
}
