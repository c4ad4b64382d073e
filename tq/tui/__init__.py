"""The live operations console (`tq console`): a Textual app over ClusterState."""
