"""Fine-tuning from the application: the dialog that plans a run, the runner that trains in a
thread, the current run's curves and metrics, the list of past runs, and before/after comparison.

The main window only wires these together; each module's docstring states its part.
"""
