"""The node-to-node contract and its machinery (see DESIGN.md §8)."""
