/* `memtrace-report check`: the CI leak gate. Reads every trace of a run (files, or directories
 * of *.mtrace files: one per process), decides pass or fail per process and for the run, prints
 * a summary and optionally JSON, JUnit XML and SARIF, and chooses the exit status.
 */
#ifndef MEMTRACE_REPORT_CHECK_H
#define MEMTRACE_REPORT_CHECK_H

/* argv[0] is "check". Returns the exit status (CHECK_EXIT_*). */
int check_main(int argc, char **argv);

#endif
