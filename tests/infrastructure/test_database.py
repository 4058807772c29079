"""Database access: a new Aurora cluster or an existing database, reached only from the functions, over TLS."""

from __future__ import annotations

from typing import Any

from .synthesis import DB_SECURITY_GROUP, Synth


def group_id(synth: Synth, prefix: str) -> str:
    (found,) = [key for key in synth.of_type("AWS::EC2::SecurityGroup") if key.startswith(prefix)]
    return found


def rules(synth: Synth, resource_type: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in synth.of_type(resource_type).values()]


def ref(value: Any) -> str | None:
    return value.get("Fn::GetAtt", [None])[0] if isinstance(value, dict) else value


def postgres_port(synth: Synth, port: Any) -> bool:
    """5432, literally or as the cluster's own port (which the cluster sets to 5432)."""
    if isinstance(port, dict):
        cluster_id, attribute = port["Fn::GetAtt"]
        return attribute == "Endpoint.Port" and synth.resources[cluster_id]["Properties"]["Port"] == 5432
    return port == 5432


def test_new_database_is_encrypted_serverless_v2_postgres(new_db: Synth) -> None:
    (cluster,) = new_db.of_type("AWS::RDS::DBCluster").values()
    props = cluster["Properties"]
    assert props["Engine"] == "aurora-postgresql"
    assert props["StorageEncrypted"] is True
    assert props["EnableIAMDatabaseAuthentication"] is True
    assert props["DeletionProtection"] is True
    # Minimum 0: the cluster pauses when idle (the job runs minutes a night) and resumes on connect.
    assert props["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0, "MaxCapacity": 4}
    assert cluster["DeletionPolicy"] == "Snapshot"
    (instance,) = new_db.of_type("AWS::RDS::DBInstance").values()
    assert instance["Properties"]["DBInstanceClass"] == "db.serverless"
    assert instance["Properties"]["PubliclyAccessible"] is False


def test_new_database_refuses_connections_without_tls(new_db: Synth) -> None:
    (group,) = new_db.of_type("AWS::RDS::DBClusterParameterGroup").values()
    assert group["Properties"]["Parameters"]["rds.force_ssl"] == "1"


def test_new_database_password_rotates(new_db: Synth) -> None:
    (schedule,) = new_db.of_type("AWS::SecretsManager::RotationSchedule").values()
    assert schedule["Properties"]["RotationRules"]["ScheduleExpression"] == "rate(30 days)"


def test_vpc_endpoints_for_what_the_functions_call(any_synth: Synth) -> None:
    services = set()
    for endpoint in any_synth.of_type("AWS::EC2::VPCEndpoint").values():
        props = endpoint["Properties"]
        assert props["VpcEndpointType"] == "Interface" and props["PrivateDnsEnabled"] is True
        services.add(any_synth.stack.resolve(props["ServiceName"])["Fn::Join"][1][-1].lstrip("."))
    assert services == {"lambda", "sns", "secretsmanager"}


def test_only_the_functions_and_rotation_reach_the_new_database_on_5432(new_db: Synth) -> None:
    database = group_id(new_db, "DatabaseDatabaseSecurityGroup")
    allowed = {group_id(new_db, "DatabaseFunctionSecurityGroup"), group_id(new_db, "DatabaseRotationSecurityGroup")}
    ingress = [r for r in rules(new_db, "AWS::EC2::SecurityGroupIngress") if ref(r["GroupId"]) == database]
    assert {ref(r["SourceSecurityGroupId"]) for r in ingress} == allowed
    for rule in ingress:
        assert rule["IpProtocol"] == "tcp"
        assert postgres_port(new_db, rule["FromPort"]) and postgres_port(new_db, rule["ToPort"])


def test_functions_may_only_reach_the_database_and_the_endpoints(new_db: Synth) -> None:
    functions = group_id(new_db, "DatabaseFunctionSecurityGroup")
    egress = {(ref(r["DestinationSecurityGroupId"]), r["FromPort"], r["ToPort"])
              for r in rules(new_db, "AWS::EC2::SecurityGroupEgress") if ref(r["GroupId"]) == functions}
    assert egress == {(group_id(new_db, "DatabaseDatabaseSecurityGroup"), 5432, 5432),
                      (group_id(new_db, "DatabaseEndpointSecurityGroup"), 443, 443)}
    # No blanket outbound rule on the group itself (at most CDK's "nothing" placeholder).
    inline = new_db.resources[functions]["Properties"].get("SecurityGroupEgress", [])
    assert all(rule["CidrIp"] == "255.255.255.255/32" for rule in inline)


def test_existing_database_gets_one_ingress_rule_from_the_functions(existing_db: Synth) -> None:
    (rule,) = [r for r in rules(existing_db, "AWS::EC2::SecurityGroupIngress") if r["GroupId"] == DB_SECURITY_GROUP]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
    assert ref(rule["SourceSecurityGroupId"]) == group_id(existing_db, "DatabaseFunctionSecurityGroup")


def test_existing_database_creates_no_database_or_network(existing_db: Synth) -> None:
    for resource_type in ("AWS::RDS::DBCluster", "AWS::EC2::VPC", "AWS::EC2::Subnet",
                          "AWS::SecretsManager::Secret"):
        assert not existing_db.of_type(resource_type), resource_type
