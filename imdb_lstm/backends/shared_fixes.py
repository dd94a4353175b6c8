"""What torch's and paddle's fixes share: a fix (their fixes.py modules take it from here), tlx's optimizers."""

OPTIMIZERS = ("Adadelta", "Adagrad", "Adam", "Adamax", "RMSprop", "SGD", "Momentum")  # tlx's working ones


def set_train_recursively(tlx):
    """`net.set_eval()` leaves dropout on (torch, paddle): tlx sets `is_train` on direct children only
    and never sets the backend's own `.training` flag, which torch's and paddle's dropout and RNN kernels read."""

    def set_train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for layer in self.modules():  # self and every sublayer, on torch and paddle
            layer.is_train = mode
        # The backend's own switch sets `.training` everywhere (and paddle's global tracer mode).
        self.train() if mode else self.eval()
        return self

    tlx.nn.Module.set_train = set_train
    tlx.nn.Module.set_eval = lambda self: set_train(self, False)
