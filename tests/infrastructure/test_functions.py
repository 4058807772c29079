"""The functions: runtime, architecture, limits, the self-continuing archive job, environment, placement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk.assertions import Annotations, Match

from .synthesis import DB_SECRET_ARN, EXISTING_DATABASE, SLACK_SECRET_ARN, SUBNETS, Synth, synthesize


def functions(synth: Synth) -> dict[str, dict[str, Any]]:
    """The archiver's own functions, by handler (CDK's helper functions use other handlers)."""
    return {f["Properties"]["Handler"]: f["Properties"] for f in synth.of_type("AWS::Lambda::Function").values()
            if f["Properties"]["Handler"].startswith("handlers.")}


def archive(synth: Synth) -> dict[str, Any]:
    return functions(synth)["handlers.archive.handler"]


def env(props: dict[str, Any]) -> dict[str, Any]:
    return props["Environment"]["Variables"]


def test_every_function_runs_python_312_on_arm64(any_synth: Synth) -> None:
    for props in functions(any_synth).values():
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["arm64"]


def test_every_function_logs_json_with_the_system_and_application_levels(any_synth: Synth) -> None:
    for props in functions(any_synth).values():
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert props["LoggingConfig"]["SystemLogLevel"] == "WARN"
        assert props["LoggingConfig"]["ApplicationLogLevel"] == "INFO"
        assert env(props)["LOG_LEVEL"] == "INFO"


def test_python_warning_level_is_lambdas_warn(tmp_path: Path) -> None:
    synth = synthesize({"log_level": "WARNING", "system_log_level": "DEBUG"}, tmp_path)
    props = archive(synth)["LoggingConfig"]
    assert (props["ApplicationLogLevel"], props["SystemLogLevel"]) == ("WARN", "DEBUG")


def test_vpc_functions_are_not_traced_without_a_way_to_x_ray(new_db: Synth) -> None:
    # A new VPC has no NAT and, by default, no X-Ray endpoint: segments could not leave it.
    assert not new_db.of_type("AWS::EC2::VPCEndpoint") or not any(
        "xray" in str(new_db.stack.resolve(e["Properties"]["ServiceName"]))
        for e in new_db.of_type("AWS::EC2::VPCEndpoint").values())
    for props in functions(new_db).values():
        assert "TracingConfig" not in props
        assert env(props)["POWERTOOLS_TRACE_DISABLED"] == "true"
    annotations = Annotations.from_stack(new_db.stack)
    annotations.has_info("/PgArchiver/Archive/Function", Match.string_like_regexp("tracing is off"))


def test_functions_outside_the_vpc_are_traced(existing_db: Synth) -> None:
    slack = functions(existing_db)["handlers.slack.handler"]
    assert slack["TracingConfig"] == {"Mode": "Active"}
    assert "POWERTOOLS_TRACE_DISABLED" not in env(slack)


def test_with_an_x_ray_endpoint_the_vpc_functions_are_traced(tmp_path: Path) -> None:
    synth = synthesize({"xray_endpoint": "true"}, tmp_path)
    endpoints = [str(synth.stack.resolve(e["Properties"]["ServiceName"]))
                 for e in synth.of_type("AWS::EC2::VPCEndpoint").values()]
    assert any("xray" in name for name in endpoints)
    for props in functions(synth).values():
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert "POWERTOOLS_TRACE_DISABLED" not in env(props)


def test_an_existing_vpc_with_its_own_route_is_traced(tmp_path: Path) -> None:
    synth = synthesize({**EXISTING_DATABASE, "create_vpc_endpoints": "false"}, tmp_path)
    for props in functions(synth).values():
        assert props["TracingConfig"] == {"Mode": "Active"}


def test_the_functions_share_one_code_asset(existing_db: Synth) -> None:
    found = functions(existing_db)
    assert set(found) == {"handlers.archive.handler", "handlers.status.handler", "handlers.slack.handler",
                          "handlers.migrate.handler"}
    assert len({props["Code"]["S3Key"] for props in found.values()}) == 1


def test_archive_function_has_a_fixed_name_its_timeout_and_reserved_concurrency(new_db: Synth) -> None:
    props = archive(new_db)
    assert props["FunctionName"] == "archiver-archive"
    assert props["Timeout"] == 15 * 60
    assert props["ReservedConcurrentExecutions"] == 2
    assert props["MemorySize"] == 512


def test_archive_function_may_call_itself_past_lambdas_loop_detection(new_db: Synth) -> None:
    assert archive(new_db)["RecursiveLoop"] == "Allow"


def test_other_functions_have_short_timeouts(new_db: Synth) -> None:
    found = functions(new_db)
    assert found["handlers.status.handler"]["Timeout"] == 29  # inside API Gateway's integration limit
    assert found["handlers.migrate.handler"]["Timeout"] == 300


def test_failed_async_invocations_go_to_an_alarmed_queue(new_db: Synth) -> None:
    (config,) = new_db.of_type("AWS::Lambda::EventInvokeConfig").values()
    props = config["Properties"]
    assert props["MaximumRetryAttempts"] == 1
    assert props["MaximumEventAgeInSeconds"] == 3600
    queue_id = props["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert new_db.resources[queue_id]["Type"] == "AWS::SQS::Queue"
    alarmed = [a["Properties"]["Dimensions"] for a in new_db.of_type("AWS::CloudWatch::Alarm").values()
               if a["Properties"].get("Namespace") == "AWS/SQS"]
    assert [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}] in alarmed


def test_archive_environment_names_the_database_topic_api_and_policy(new_db: Synth) -> None:
    variables = env(archive(new_db))
    assert variables["POWERTOOLS_SERVICE_NAME"] == "archiver"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "Archiver"
    assert variables["LOG_LEVEL"] == "INFO"
    assert variables["ARCHIVER_TIMEZONE"] == "Indian/Mauritius"
    assert variables["ARCHIVER_RETENTION_DAYS"] == "60"
    assert variables["ARCHIVER_MAX_HOPS"] == "200"
    assert variables["ARCHIVER_DB_SSL"] == "verify-full"
    assert variables["ARCHIVER_DB_IAM_AUTH"] == "false"
    assert variables["ARCHIVER_DB_NAME"] == "archiver"
    assert "Ref" in variables["ARCHIVER_DB_SECRET_ARN"]
    assert new_db.resources[variables["ARCHIVER_ALERT_TOPIC_ARN"]["Ref"]]["Type"] == "AWS::SNS::Topic"
    url = new_db.stack.resolve(variables["ARCHIVER_STATUS_BASE_URL"])["Fn::Join"][1]
    assert url[0] == "https://" and url[-1] == "/v1"
    # Unset knobs are left to the core's defaults rather than copied here.
    assert "ARCHIVER_BATCH_SIZE" not in variables and "ARCHIVER_RELATED_MODE" not in variables


def test_configured_policy_and_existing_database_reach_the_environment(existing_db: Synth) -> None:
    variables = env(archive(existing_db))
    assert variables["ARCHIVER_BATCH_SIZE"] == "500"
    assert variables["ARCHIVER_RELATED_MODE"] == "move"
    assert variables["ARCHIVER_DB_HOST"] == "orders.cluster-abc.eu-west-1.rds.amazonaws.com"
    assert variables["ARCHIVER_DB_PORT"] == "5432"
    assert variables["ARCHIVER_DB_NAME"] == "orders"
    assert variables["ARCHIVER_DB_SECRET_ARN"] == DB_SECRET_ARN


def test_status_function_knows_which_function_starts_runs(new_db: Synth) -> None:
    variables = env(functions(new_db)["handlers.status.handler"])
    assert variables["ARCHIVER_ARCHIVE_FUNCTION_NAME"] == "archiver-archive"
    assert "ARCHIVER_STATUS_BASE_URL" in variables
    assert "ARCHIVER_ALERT_TOPIC_ARN" not in variables


def test_slack_function_reads_only_its_webhook_secret(existing_db: Synth) -> None:
    variables = env(functions(existing_db)["handlers.slack.handler"])
    assert variables["ARCHIVER_SLACK_WEBHOOK_SECRET_ARN"] == SLACK_SECRET_ARN
    assert not any(name.startswith("ARCHIVER_DB_") for name in variables)


def test_database_functions_run_in_the_vpc_and_slack_outside(existing_db: Synth) -> None:
    found = functions(existing_db)
    for handler in ("handlers.archive.handler", "handlers.status.handler", "handlers.migrate.handler"):
        assert found[handler]["VpcConfig"]["SubnetIds"] == SUBNETS
    assert "VpcConfig" not in found["handlers.slack.handler"]


def test_new_database_functions_use_the_isolated_subnets(new_db: Synth) -> None:
    subnet_ids = {new_db.stack.resolve(s)["Ref"] for s in archive(new_db)["VpcConfig"]["SubnetIds"]}
    assert len(subnet_ids) == 2
    for subnet_id in subnet_ids:
        tags = {t["Key"]: t["Value"] for t in new_db.resources[subnet_id]["Properties"]["Tags"]}
        assert tags["aws-cdk:subnet-type"] == "Isolated"
    assert not new_db.of_type("AWS::EC2::NatGateway") and not new_db.of_type("AWS::EC2::InternetGateway")


def test_schema_migration_runs_on_deploy_after_the_database(new_db: Synth) -> None:
    (resource_id, resource), = new_db.of_type("Custom::ArchiverSchema").items()
    assert set(resource["Properties"]) == {"ServiceToken", "CodeHash", "Settings"}
    cluster_id = next(iter(new_db.of_type("AWS::RDS::DBCluster")))
    assert cluster_id in resource["DependsOn"]
