"""Evaluation: V-STaR, TVGBench and multiple-choice metrics, test-time scaling, CLI."""
