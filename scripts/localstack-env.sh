# Sourced by the localstack-* scripts: the SDK and CDK settings that point at LocalStack.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_DEFAULT_REGION=$AWS_REGION
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://localhost.localstack.cloud:4566}
# The `s3.` host lets the SDK use virtual-host addressing; core/s3-client.ts switches to path style anyway.
export AWS_ENDPOINT_URL_S3=${AWS_ENDPOINT_URL_S3:-http://s3.localhost.localstack.cloud:4566}
export RSCLIP_OUTPUTS=${RSCLIP_OUTPUTS:-cdk-outputs.json}
export RSCLIP_STACK=Rsclip

# Reads one CloudFormation output of the deployed stack from the outputs file.
rsclip_output() {
  node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]] ?? {};
    if (!o[process.argv[3]]) { console.error(`no ${process.argv[3]} in ${process.argv[1]}: run npm run localstack:deploy`); process.exit(1); }
    console.log(o[process.argv[3]]);' "$RSCLIP_OUTPUTS" "$RSCLIP_STACK" "$1"
}
