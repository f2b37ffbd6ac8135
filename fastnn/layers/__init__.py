"""Layers: Dense, Dropout, activation layers, and the Sequential model."""

from .activations import Activation, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .sequential import LAYERS, History, Sequential

__all__ = [
    "LAYERS",
    "Activation",
    "Dense",
    "Dropout",
    "History",
    "Layer",
    "LeakyReLU",
    "Linear",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
]
