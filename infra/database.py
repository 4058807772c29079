"""Database access: the network the functions run in, the way they reach PostgreSQL, their credentials.

``database=new`` creates a VPC with isolated subnets only (no NAT, no internet) and an Aurora
Serverless v2 PostgreSQL cluster; ``database=existing`` imports a VPC, subnets and the database's
security group from configuration (no account lookup, so synth works anywhere). In both cases the
functions get one security group whose only way out is the database port and the VPC endpoints.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Annotations, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from archiver.environment import DatabaseEnv

from .config import ArchiverConfig
from .constants import NEW_DATABASE_ADMIN, NEW_DATABASE_NAME, POSTGRES_PORT
from .function import Placement, grant_imported_secret_read, imported_secret

# What the functions call from inside the VPC: self-invocation and starting runs (Lambda), alerts
# (SNS), credentials (Secrets Manager). Logs leave through the Lambda service and metrics are
# embedded in the logs (EMF), so neither needs an endpoint; X-Ray's is optional (xray_endpoint):
# without it (or another way out of the VPC) the VPC functions are not traced.
ENDPOINT_SERVICES = {
    "Lambda": ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
}


class DatabaseAccess(Construct):
    """The VPC placement, security groups, endpoints and credentials of the functions that use the database."""

    def __init__(self, scope: Construct, id: str, *, config: ArchiverConfig) -> None:
        super().__init__(scope, id)
        self._config = config
        self.cluster: rds.DatabaseCluster | None = None
        self.secret: secretsmanager.ISecret | None = None
        self.vpc: ec2.IVpc
        if config.database == "new":
            self.vpc = self._new_vpc(config)
            subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        else:
            self.vpc = ec2.Vpc.from_vpc_attributes(
                self, "Vpc", vpc_id=config.db_vpc_id or "",
                availability_zones=config.db_availability_zones,
                private_subnet_ids=config.db_subnet_ids,
            )
            Annotations.of(self.vpc).acknowledge_warning(
                "@aws-cdk/aws-ec2:noSubnetRouteTableId",
                "The stack only places functions and endpoints in these subnets; it never reads their routes.")
            subnets = ec2.SubnetSelection(subnets=self.vpc.private_subnets)

        self.security_group = ec2.SecurityGroup(
            self, "FunctionSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Archiver functions: out to the database port and the VPC endpoints only",
        )
        self.placement = Placement(vpc=self.vpc, subnets=subnets, security_group=self.security_group)

        self.endpoints: list[ec2.InterfaceVpcEndpoint] = []
        if config.create_vpc_endpoints:
            self._add_endpoints(subnets)
        else:
            # The VPC already routes to AWS APIs (its own endpoints or a NAT) through unknown groups.
            self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
                                                "AWS APIs through the VPC's existing endpoints or NAT")

        if config.database == "new":
            self._new_cluster(config, subnets)
            self.environment = {DatabaseEnv.variable("name"): config.db_name or NEW_DATABASE_NAME}
        else:
            self._existing_database(config)
            self.environment = {DatabaseEnv.variable("host"): config.db_host or "",
                                DatabaseEnv.variable("port"): str(config.db_port)}
            if config.db_name:
                self.environment[DatabaseEnv.variable("name")] = config.db_name
            if config.db_iam_auth:
                self.environment[DatabaseEnv.variable("user")] = config.db_user or ""
        if self.secret is not None:
            self.environment[DatabaseEnv.variable("secret_arn")] = self.secret.secret_arn
        self.environment[DatabaseEnv.variable("iam_auth")] = "true" if config.db_iam_auth else "false"
        self.environment[DatabaseEnv.variable("ssl_mode")] = "verify-full"

    def _new_vpc(self, config: ArchiverConfig) -> ec2.Vpc:
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=config.log_retention,
                                  removal_policy=RemovalPolicy.DESTROY)
        return ec2.Vpc(
            self, "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[ec2.SubnetConfiguration(
                name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24)],
            flow_logs={"Rejected": ec2.FlowLogOptions(
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                traffic_type=ec2.FlowLogTrafficType.REJECT)},
        )

    def _add_endpoints(self, subnets: ec2.SubnetSelection) -> None:
        self.endpoint_security_group = ec2.SecurityGroup(
            self, "EndpointSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Archiver VPC interface endpoints: HTTPS in from the archiver functions",
        )
        services = dict(ENDPOINT_SERVICES)
        if self._config.xray_endpoint:
            services["XRay"] = ec2.InterfaceVpcEndpointAwsService.XRAY
        for name, service in services.items():
            self.endpoints.append(ec2.InterfaceVpcEndpoint(
                self, f"{name}Endpoint", vpc=self.vpc, service=service, subnets=subnets,
                private_dns_enabled=True, open=False, security_groups=[self.endpoint_security_group],
            ))
        self.endpoint_security_group.connections.allow_from(
            self.security_group, ec2.Port.tcp(443), "HTTPS from the archiver functions")

    def _new_cluster(self, config: ArchiverConfig, subnets: ec2.SubnetSelection) -> None:
        engine = rds.DatabaseClusterEngine.aurora_postgres(version=rds.AuroraPostgresEngineVersion.VER_17_5)
        db_security_group = ec2.SecurityGroup(
            self, "DatabaseSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Archiver Aurora PostgreSQL: PostgreSQL in from the archiver functions and rotation",
        )
        identifier = f"{config.stack_name.lower()}-db"
        # Created here, not by RDS, so it has a retention without CDK's log-retention Lambda.
        database_logs = logs.LogGroup(self, "DatabaseLogs",
                                      log_group_name=f"/aws/rds/cluster/{identifier}/postgresql",
                                      retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY)
        cluster = rds.DatabaseCluster(
            self, "Cluster",
            cluster_identifier=identifier,
            engine=engine,
            writer=rds.ClusterInstance.serverless_v2("Writer", auto_minor_version_upgrade=True),
            serverless_v2_min_capacity=config.db_min_capacity,
            serverless_v2_max_capacity=config.db_max_capacity,
            vpc=self.vpc,
            vpc_subnets=subnets,
            security_groups=[db_security_group],
            port=POSTGRES_PORT,
            credentials=rds.Credentials.from_generated_secret(NEW_DATABASE_ADMIN),
            default_database_name=config.db_name or NEW_DATABASE_NAME,
            # TLS required: the server refuses unencrypted connections.
            parameter_group=rds.ParameterGroup(self, "Parameters", engine=engine,
                                               parameters={"rds.force_ssl": "1"}),
            storage_encrypted=True,
            iam_authentication=True,
            deletion_protection=config.db_deletion_protection,
            backup=rds.BackupProps(retention=Duration.days(7)),
            cloudwatch_logs_exports=["postgresql"],
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        cluster.node.add_dependency(database_logs)
        Validations.of(cluster).acknowledge(Acknowledgment(
            id="AwsSolutions-RDS11",
            reason="PostgreSQL's default port is kept on purpose: the cluster has no public access and its "
                   "security group admits only the archiver functions and the rotation function.",
        ))
        cluster.connections.allow_from(self.security_group, ec2.Port.tcp(POSTGRES_PORT),
                                       "PostgreSQL from the archiver functions")
        rotation_security_group = ec2.SecurityGroup(
            self, "RotationSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Archiver secret rotation: out to the database and the Secrets Manager endpoint",
        )
        cluster.add_rotation_single_user(
            automatically_after=Duration.days(30),
            vpc_subnets=subnets,
            security_group=rotation_security_group,
            # Naming the endpoint also orders it before the first rotation, which starts at once.
            endpoint=self._endpoint("SecretsManager"),
        )
        self.endpoint_security_group.connections.allow_from(
            rotation_security_group, ec2.Port.tcp(443), "HTTPS from the secret rotation function")
        self.cluster = cluster
        self.secret = cluster.secret

    def _existing_database(self, config: ArchiverConfig) -> None:
        db_security_group = ec2.SecurityGroup.from_security_group_id(
            self, "DatabaseSecurityGroup", config.db_security_group_id or "", mutable=True)
        self.security_group.connections.allow_to(
            db_security_group, ec2.Port.tcp(config.db_port), "PostgreSQL to the archived database")
        if config.db_secret_arn:
            self.secret = imported_secret(self, "Secret", config.db_secret_arn)

    def _endpoint(self, name: str) -> ec2.InterfaceVpcEndpoint | None:
        return next((e for e in self.endpoints if e.node.id == f"{name}Endpoint"), None)

    def grant_connect(self, grantee: iam.IGrantable) -> None:
        """Let a function log in: read the credentials secret, or connect with an IAM token."""
        if self.secret is not None and self._config.database == "existing":
            grant_imported_secret_read(self.secret, grantee, self._config)
        elif self.secret is not None:
            self.secret.grant_read(grantee)
        if self._config.db_iam_auth:
            grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
                actions=["rds-db:connect"],
                resources=[Stack.of(self).format_arn(
                    service="rds-db", resource="dbuser",
                    resource_name=f"{self._config.db_resource_id}/{self._config.db_user}",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME)],
            ))
