#!/bin/sh
# keepalived's notify_master on AWS (the seed's script): move the elastic IP to this instance. AWS routes no
# VRRP-managed address between instances, so instead of virtual_ipaddress the new master asks EC2 to associate
# the elastic IP with itself; --allow-reassociation takes it from the old master in one call, even a dead one.
# Needs the AWS CLI and an instance role allowed ec2:AssociateAddress (and ec2:DescribeAddresses to check).
set -eu
# The elastic IP's allocation id (aws ec2 describe-addresses); the same on both machines.
ALLOCATION_ID=eipalloc-0123456789abcdef0
# This instance's id and region from the instance metadata service (IMDSv2: a token first).
token=$(curl -fsS --max-time 2 -X PUT http://169.254.169.254/latest/api/token \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
metadata() {
    curl -fsS --max-time 2 -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
INSTANCE_ID=$(metadata instance-id)
REGION=$(metadata placement/region)
aws ec2 associate-address --region "$REGION" --allocation-id "$ALLOCATION_ID" \
    --instance-id "$INSTANCE_ID" --allow-reassociation
logger -t elbe-vrrp "elastic IP $ALLOCATION_ID associated with $INSTANCE_ID" 2>/dev/null || true
