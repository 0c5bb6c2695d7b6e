"""The plugin's widgets. The dock (`dock`) is put together from its form (`form`, with the
photo preview of `photo_preview`), its results table (`results`) and its background job
(`jobs`); `maptools` draws search regions; `install_dialog` installs missing packages;
`errors` turns an exception into what the user reads; `widgets` holds small shared helpers."""
