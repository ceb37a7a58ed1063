"""The MLflow side of cltool: runs, registered versions, aliases, the promotion gate.

The only package that imports mlflow. Importing it connects to nothing.
"""
