"""Identity and access for every node (DESIGN.md §8); the rest moves here with issue 9."""
