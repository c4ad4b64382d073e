from tq import App

# No broker or backend given: tq uses its embedded broker and result store in ./.tq/.
# Set TQ_BROKER_URL=amqp://guest@localhost// and TQ_RESULT_BACKEND=rpc:// (or redis://)
# to use a server instead, without editing this file.
app = App('proj', include=['proj.tasks'])

# Optional configuration, see the configuration reference.
app.conf.update(
    result_expires=3600,
)
