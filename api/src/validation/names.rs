//! Name, label, annotation and selector rules (apimachinery's `validation` package).
