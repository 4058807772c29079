"""AWS CDK deployment of the archiver: one stack, one construct per concern."""
