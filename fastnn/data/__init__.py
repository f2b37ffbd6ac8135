"""Data: reading CSV files, the bundled data sets, preprocessing and splitting.

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

__all__ = [
    "CHURN_DROP",
    "CHURN_TARGET",
    "MISSING_MODES",
    "Preprocessor",
    "churn_arrays",
    "load_churn",
    "read_csv",
    "read_csv_text",
    "split_indices",
    "train_test_split",
]
