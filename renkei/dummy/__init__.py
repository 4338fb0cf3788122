"""Synthetic population and business data for the demo and the tests.

Everything here is made up: the people do not exist. Names come from Faker's
``ja_JP`` provider, identifiers from the J-LIS simulator in `renkei.core.ids`.
"""
