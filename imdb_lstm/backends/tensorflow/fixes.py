"""TensorLayerX 0.5.8's fix for tensorflow 2.21.

Each fix is small and says what breaks without it; tests/test_compat.py shows, for each, code that fails
without it (tests/compat_fixes.py). The backend's module (__init__.py) applies them, before the first
`import tensorlayerx` (`before_import`) or right after (`after_import`).
"""


def run_lstm_as_compiled_scans(tlx):
    """tensorflow: tlx's LSTM (`ops.rnnbase`) is wrong when bidirectional, and slow. Its backward
    direction reverses each time step's batch (and back) instead of the time axis, so it reads the
    reviews forwards like the forward direction; its dropout between layers keeps the train/eval mode
    of the moment the layer was built; and each of 200 time steps runs as ~10 eager ops (586 ms for a
    step of the default model, torch 45 ms). Run each layer and direction as one compiled tf.scan over
    time instead: the same equations (torch's gate order, the weights as tlx lays them out)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def direction(x, w_ih, w_hh, bias, reverse):
        """Outputs [time, batch, hidden] and the last (h, c) of one LSTM direction over x [time, batch, in]."""
        projected = tf.einsum("tbi,gi->tbg", x, w_ih) + bias
        zeros = tf.zeros([tf.shape(x)[1], tf.shape(w_hh)[1]], x.dtype)

        def step(state, projected_t):
            h, c = state
            i, f, g, o = tf.split(projected_t + tf.matmul(h, w_hh, transpose_b=True), 4, axis=-1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            return tf.sigmoid(o) * tf.tanh(c), c

        hs, cs = tf.scan(step, projected, initializer=(zeros, zeros), reverse=reverse)
        last = 0 if reverse else -1
        return hs, hs[last], cs[last]

    lstm = tlx.nn.LSTM
    original = lstm.forward

    def forward(self, input, states=None):
        if states is not None or not self.bias:  # starting states, no bias: not used here
            return original(self, input, states)
        x = tf.transpose(input, perm=(1, 0, 2)) if self.batch_first else input
        directions = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer and self.is_train and self.dropout:
                x = tf.nn.dropout(x, rate=self.dropout)
            outputs = []
            for backwards in range(directions):
                k = layer * directions + backwards
                # tensors, not the variables: a trace that holds variables breaks once their model is gone
                w_ih, w_hh = tf.convert_to_tensor(self.weight_ih[k]), tf.convert_to_tensor(self.weight_hh[k])
                hs, h, c = direction(x, w_ih, w_hh, self.bias_ih[k] + self.bias_hh[k], reverse=bool(backwards))
                outputs.append(hs)
                h_n.append(h)
                c_n.append(c)
            x = tf.concat(outputs, axis=-1) if directions == 2 else outputs[0]
        y = tf.transpose(x, perm=(1, 0, 2)) if self.batch_first else x
        return y, (tf.stack(h_n), tf.stack(c_n))

    lstm.forward = forward
