"""Pure business rules. Nothing in here imports boto3, pynamodb or any AWS client."""
