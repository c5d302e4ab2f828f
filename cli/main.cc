// pstrain: one binary for role processes (--job_name=ps|worker, as mnist_replica.py) and the
// commands train, launch and devices. The logic lives in the libraries; see cli/cli.h.
#include "cli/cli.h"

int main(int argc, char** argv) { return pstrain::run_cli(argc, argv); }
