// aws-local-stepfunctions 3.0.0 needs Promise.withResolvers, which Node 20 lacks; one shim serves the CLI and the tests.
import '../cdk/local/promise-with-resolvers.ts';
