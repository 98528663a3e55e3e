"""Suite-wide settings: one torch thread per test process.

The tests use tiny tensors, where thread start-up and contention cost more than they save; one
thread also keeps the suite's timing steady on a shared 2-core machine.
"""

import torch

torch.set_num_threads(1)
