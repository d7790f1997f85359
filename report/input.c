/* The item source of the aggregated report (input.h): today the reader in file order. */
#include "input.h"

int input_open(struct input **out, const char *path)
{
    return reader_open((struct reader **)out, path);
}

int input_open_mem(struct input **out, const void *data, size_t size)
{
    return reader_open_mem((struct reader **)out, data, size);
}

int input_next(struct input *in, struct rd_item *item)
{
    return reader_next((struct reader *)in, item);
}

const struct rd_status *input_status(const struct input *in)
{
    return reader_status((const struct reader *)in);
}

const char *input_error(const struct input *in)
{
    return reader_error((const struct reader *)in);
}

const char *input_name(const struct input *in)
{
    return reader_name((const struct reader *)in);
}

void input_close(struct input *in)
{
    reader_close((struct reader *)in);
}
