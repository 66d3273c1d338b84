"""Each function's permissions as the deployed stack would grant them, made real in moto.

Reads a JSON request on stdin:
  {"endpoint": moto's URL, "template": path to template.yaml, "bucket": the bucket's name,
   "queues": {"GatherQueue": "sheaf-gather", ...}, "mail_from": the sender,
   "secrets": {"ApiTokenSecret": its ARN in moto, ...}}
expands template.yaml with SAM's own translator (samtranslator, from aws-sam-cli), resolves
the intrinsic functions of each function role's policies to the names in the request, and in
moto creates one IAM user per function holding exactly those policies (the inline ones and
the AWS managed policies SAM attaches, whose documents are written out below), with an access
key; and a user "TestAdmin" allowed everything, for the test's own calls. Prints
{"users": {"GatherFunction": {"key": ..., "secret": ...}, ..., "TestAdmin": {...}},
"ses_conditions": {"GatherFunction": [{"StringEquals": {"ses:FromAddress": ...}}], ...},
"secret_grants": {"ApiFunction": [{"actions": ["secretsmanager:GetSecretValue"],
"resource": ARN}, ...], ...}}.

moto checks an action and its resource, not a statement's Condition (it denies any statement
whose condition it cannot evaluate): SES's sender condition is taken out of what moto gets and
returned in "ses_conditions" for the test to check instead. moto names an SQS batch call by its
own action (sqs:ChangeMessageVisibilityBatch), which AWS authorises by the single call's: each
SQS action with a batch form is given its batch name too. moto authorises Secrets Manager
calls against the resource "*" whatever the secret: its statements are widened to "*" for
moto, and what they really grant is returned in "secret_grants" for the test to check.
"""

import json
import re
import sys

import boto3
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

REGION = "us-east-1"
ACCOUNT = "123456789012"

# AWS's managed policies that SAM attaches to a function's role, as AWS publishes them.
MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ],
    },
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            },
        ],
    },
}


# SQS calls that have a batch form, authorised on AWS by the single call's permission.
SQS_BATCHED = {"sqs:SendMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}


class NoManagedPolicies:
    """The translator asks for managed policy ARNs by name only for names in Policies."""

    def load(self):
        return {}


def resolver(request):
    bucket = request["bucket"]
    queues = request["queues"]

    def attribute(logical, name):
        if logical == "DataBucket" and name == "Arn":
            return f"arn:aws:s3:::{bucket}"
        if logical in queues and name == "Arn":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queues[logical]}"
        if logical in queues and name == "QueueName":
            return queues[logical]
        raise ValueError(f"cannot resolve {logical}.{name}")

    def ref(name):
        if name == "DataBucket":
            return bucket
        if name == "MailFrom":
            return request["mail_from"]
        if name in queues:
            return f"{request['endpoint']}/{ACCOUNT}/{queues[name]}"
        if name in request["secrets"]:
            return request["secrets"][name]
        pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
        if name in pseudo:
            return pseudo[name]
        raise ValueError(f"cannot resolve Ref {name}")

    def sub(text, names):
        def one(match):
            name = match.group(1)
            if name in names:
                return names[name]
            if "." in name:
                return attribute(*name.split(".", 1))
            return ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(value):
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return ref(value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            logical, name = target if isinstance(target, list) else target.split(".", 1)
            return attribute(logical, name)
        if set(value) == {"Fn::Sub"}:
            body = value["Fn::Sub"]
            if isinstance(body, list):
                return sub(body[0], {k: resolve(v) for k, v in body[1].items()})
            return sub(body, {})
        if set(value) == {"Fn::If"}:
            raise ValueError("conditional policies are not expected")
        return {k: resolve(v) for k, v in value.items()}

    return resolve


def main():
    request = json.load(sys.stdin)
    template = yaml_parse(open(request["template"]).read())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            # The translator wants a packaged CodeUri (as `sam package` leaves it).
            resource["Properties"]["CodeUri"] = "s3://code/bootstrap.zip"
    expanded = transform(template, {"Architecture": "x86_64"}, NoManagedPolicies())
    resolve = resolver(request)
    iam = boto3.client(
        "iam",
        endpoint_url=request["endpoint"],
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    users, ses_conditions, secret_grants = {}, {}, {}

    def user(name, documents):
        iam.create_user(UserName=name)
        for n, document in enumerate(documents):
            document.setdefault("Version", "2012-10-17")
            iam.put_user_policy(
                UserName=name, PolicyName=f"policy{n}", PolicyDocument=json.dumps(document)
            )
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users[name] = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

    user("TestAdmin", [{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}])
    for logical, resource in expanded["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role" or not logical.endswith("FunctionRole"):
            continue
        function = logical[: -len("Role")]
        properties = resource["Properties"]
        documents = [MANAGED[arn] for arn in properties.get("ManagedPolicyArns", [])]
        documents += [resolve(p["PolicyDocument"]) for p in properties.get("Policies", [])]
        conditions, secrets = [], []
        for document in documents:
            for statement in document["Statement"]:
                actions = statement["Action"]
                actions = actions if isinstance(actions, list) else [actions]
                if any(a.startswith("secretsmanager:") for a in actions):
                    # moto authorises Secrets Manager calls against the resource "*" only:
                    # the statement is widened for moto, its real grant returned.
                    if not all(a.startswith("secretsmanager:") for a in actions):
                        raise ValueError(f"{function}: Secrets Manager mixed with others: {statement}")
                    resources = statement["Resource"]
                    resources = resources if isinstance(resources, list) else [resources]
                    secrets += [{"actions": sorted(actions), "resource": r} for r in resources]
                    statement["Resource"] = "*"
                # AWS authorises SQS's batch calls by the single action's permission (there
                # is no IAM action sqs:ChangeMessageVisibilityBatch); moto asks for the batch
                # action's own name.
                batched = [f"{a}Batch" for a in actions if a in SQS_BATCHED]
                if batched:
                    statement["Action"] = actions + batched
                condition = statement.pop("Condition", None)
                if condition is None:
                    continue
                if not all(a.startswith("ses:") for a in actions):
                    raise ValueError(f"{function}: a condition outside SES: {statement}")
                conditions.append(condition)
        ses_conditions[function] = conditions
        secret_grants[function] = secrets
        user(function, documents)
    json.dump(
        {"users": users, "ses_conditions": ses_conditions, "secret_grants": secret_grants},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
