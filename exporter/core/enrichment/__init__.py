"""What a finished run needs fetched before it counts: the queue, which endpoints are
served, the rules of the messages and steps walks."""
