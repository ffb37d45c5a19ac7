# Consul ACL policy for a meshfed gateway:
#   consul acl policy create -name meshfed-gateway -rules @meshfed-policy.hcl
#   consul acl token create -description "meshfed gateway dc-east-gw-1" -policy-name meshfed-gateway
#
# Source: /v1/catalog/services, /v1/health/state/any and /v1/health/service/<name> need read on
# services and nodes (without it Consul filters results and meshfed logs one warning).
service_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}

# Sink: /v1/agent/service/register and /deregister need write on the service names it registers.
# With the default nameTemplate "{name}" those are the imported services' names, so write is
# needed on all names. To narrow it, set nameTemplate: "meshfed-{namespace}-{name}" in the sink
# and replace the block below with:  service_prefix "meshfed-" { policy = "write" }
service_prefix "" {
  policy = "write"
}
