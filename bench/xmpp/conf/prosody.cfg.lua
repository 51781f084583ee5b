-- Prosody 0.12 for bench/xmpp (a Python format template: doubled braces are Lua's).
-- Loopback only; SCRAM-SHA-256 hashed storage like Conclave; PLAIN allowed
-- without TLS because tsung speaks nothing else; no archive, no room history.
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = {{ warn = "{dir}/prosody.log" }}
network_backend = "epoll"
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{}}
legacy_ssl_ports = {{}}
s2s_ports = {{}}
component_ports = {{}}
http_ports = {{}}
https_ports = {{}}
admins = {{}}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix" }}
modules_disabled = {{ "s2s" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
password_hash = "SHA-256"
default_iteration_count = {iterations}
storage = "internal"
c2s_stanza_size_limit = 256*1024
ssl = {{ certificate = "{cert}"; key = "{key}" }}
VirtualHost "localhost"
Component "conference.localhost" "muc"
  restrict_room_creation = false
  muc_room_locking = false          -- 0.12 locks new rooms until configured; tsung never configures them
  max_history_messages = 0
  muc_room_default_history_length = 0
