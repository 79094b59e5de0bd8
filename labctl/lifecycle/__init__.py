"""A lab's life: `up` as an ordered list of small phases over one context, and `down`."""
