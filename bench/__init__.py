"""Speed and quality measurements: each bench_*.py prints ratios measured side by side and writes bench/results/<name>.json."""
