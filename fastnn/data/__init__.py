"""Data: reading CSV and Parquet files (whole or in chunks), the bundled data sets,
preprocessing for binary, multi-class and regression targets, and splitting.

>>> from fastnn import data
>>> df = data.load_churn()                                   # doctest: +SKIP
>>> train, test = data.train_test_split(df, test_size=0.2, seed=0)
>>> prep = data.Preprocessor(target="Exited", drop=data.CHURN_DROP)
>>> X_train, y_train = prep.fit_transform(train)             # 11 standardized features
>>> X_test, y_test = prep.transform(test)

pandas is imported only when these functions run, so ``import fastnn`` needs only NumPy.
"""

from .loading import CHURN_DROP, CHURN_TARGET, load_churn, read_csv, read_csv_text
from .preprocessing import MISSING_MODES, Preprocessor
from .recipes import churn_arrays
from .split import split_indices, train_test_split
from .tables import TableWriter, iter_table, read_table

__all__ = [
    "CHURN_DROP",
    "CHURN_TARGET",
    "MISSING_MODES",
    "Preprocessor",
    "TableWriter",
    "churn_arrays",
    "iter_table",
    "load_churn",
    "read_csv",
    "read_csv_text",
    "read_table",
    "split_indices",
    "train_test_split",
]
