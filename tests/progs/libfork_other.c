/* libfork_other.so: a stand-in for a user's own preload, listed before libmemtrace.so in
 * LD_PRELOAD; children report whether it is still loaded (pitfalls.md §10, checklist 24). */
int fork_other_marker(void);

int fork_other_marker(void)
{
    return 42;
}
