"""Text for staff and search: Japanese era dates (和暦), and the search/matching keys
(`renkei.core.text.normalize`: kana, kanji names with 異体字, addresses, numbers)."""
