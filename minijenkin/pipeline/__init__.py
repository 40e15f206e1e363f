"""Pipeline files: loading, validation and turning them into job graphs."""

PIPELINE_FILE = ".minijenkin.yml"
