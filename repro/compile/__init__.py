"""Compiler: specs -> stage graph -> dvc.yaml + params.yaml."""
